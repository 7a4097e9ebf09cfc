"""What a failure e-mail says (engine/notify.py sends it): a subject, a plain-text part and an
HTML part with the job, what happened, the reason in plain words with what to do about it, the
counts, and the commands to look into it.

The HTML is built with the standard library's ``string.Template`` and ``html.escape``: Jinja2 is
not a dependency of identity-sync, and one fixed message does not justify adding it. Every value
that reaches the HTML goes through :func:`html.escape` first — a job name, a reason and an error
message all come from outside (an operator, a source, a target's answer).
"""

from __future__ import annotations

import html
import re
import shlex
import textwrap
from dataclasses import dataclass, field
from string import Template

#: What a notice reports. ``recovered`` is optional for callers: Entra mails only failures.
KINDS = ("quarantined", "reason_changed", "deletion_guard", "recovered")

_CLI = "identity-sync"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Notice:
    """One event worth an e-mail, as the engine saw it."""

    job_name: str
    #: One of :data:`KINDS`.
    kind: str
    #: Entra's quarantine reason (provisioning-engine.md §4.3), e.g. ``TooManyDeletes``.
    reason: str
    #: One line: the error that stopped the job, or what the guard found.
    detail: str = ""
    #: What the event counted: ``{"would_delete": 612, "threshold": 500}``, or a cycle's counts.
    counts: dict[str, int] = field(default_factory=dict)
    #: When it began (a timestamp as the engine stores them).
    since: str = ""
    #: When the engine tries again, if it does.
    next_attempt: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"notice kind {self.kind!r}: one of {', '.join(KINDS)}")

    @property
    def dedupe_key(self) -> str:
        """The event's identity: a quarantine that began at ``since`` for ``reason``. The same
        event reported by every cycle of the series has the same key, and is mailed once; a new
        reason or a new series is a new event."""
        return f"{self.kind}:{self.reason}:{self.since}"[:255]


@dataclass(frozen=True)
class Message:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class _Advice:
    """A reason in plain words, and what to do: (what, command or ``""``) pairs; ``{job}`` in a
    command is the job's name, quoted for a shell."""

    meaning: str
    steps: tuple[tuple[str, str], ...]


_RESTART = ("When it is fixed, start again (a full cycle):", f"{_CLI} job restart {{job}}")
_READ_FAILURES = ("Read the objects that failed and why:", f"{_CLI} job logs {{job}} --status failure")

#: Entra's quarantine reasons (provisioning-engine.md §4.3) in plain words.
REASONS: dict[str, _Advice] = {
    "TooManyDeletes": _Advice(
        "A cycle would have deleted or disabled more objects than the job's deletion threshold allows, "
        "so it deleted and disabled none of them. This protects the target from a source export cut "
        "short or a scoping filter changed by mistake.",
        (("If these deletions are intended, let them through:", f"{_CLI} job restart {{job}} --reset force-deletes"),
         ("If they are not, fix the source or the scoping first, then:", f"{_CLI} job restart {{job}}"))),
    "EncounteredQuarantineException": _Advice(
        "The job could not work at all: the target refused its credentials (401 or 403), could not be "
        "reached, or did not answer as a SCIM service (a wrong URL often answers 404); or the source "
        "could not be read.",
        (("Check the target URL and credentials:", f"{_CLI} job test-connection {{job}}"),
         ("Change what is wrong:", f"{_CLI} job set {{job}} --target-url URL --target-token-file FILE"),
         _RESTART)),
    "EncounteredEscrowProportionThreshold": _Advice(
        "Too large a share of the cycle's changes failed (more than 40%): the target refuses what the "
        "mapping sends, or the data does not fit it.",
        (_READ_FAILURES, ("Fix the mapping or the data:", f"{_CLI} job export {{job}}"), _RESTART)),
    "EncounteredBaseEscrowThreshold": _Advice(
        "More objects failed than a job tolerates, whatever the share of successes.",
        (_READ_FAILURES, _RESTART)),
    "EncounteredTotalEscrowThreshold": _Advice(
        "More objects failed in total, counting references that could not be resolved, than a job "
        "tolerates.",
        (_READ_FAILURES, _RESTART)),
    "QuarantinedOnDemand": _Advice(
        "An operator put the job in quarantine.",
        (("When it may run again:", f"{_CLI} job restart {{job}} --reset quarantine"),)),
    "IngestionInterrupted": _Advice(
        "Reading the source was interrupted, so the job did not act on an incomplete picture.",
        (("Check that the source is reachable and complete, then:", f"{_CLI} job restart {{job}}"),)),
}
_UNKNOWN = _Advice("The job was stopped for a reason this version does not describe; the detail says more.",
                   (_READ_FAILURES, _RESTART))

_HEADLINES = {
    "quarantined": "Job '{job}' is in quarantine: {reason}",
    "reason_changed": "Job '{job}' is still in quarantine, now for: {reason}",
    "deletion_guard": "Job '{job}' held back its deletions: {reason}",
    "recovered": "Job '{job}' left quarantine",
}
_WHAT_HAPPENED = {
    "quarantined": "The job was put in quarantine: it tries again less often, and leaves quarantine by "
                   "itself when a cycle succeeds.",
    "reason_changed": "The job is still in quarantine, for a different reason than the one last mailed.",
    "deletion_guard": "The deletion guard stopped a cycle before it deleted or disabled anything.",
    "recovered": "A cycle succeeded: the job left quarantine and runs on its normal schedule again.",
}
_COUNT_LABELS = {
    "would_delete": "deletions and disables held back",
    "threshold": "deletion threshold",
    "created": "created", "updated": "updated", "disabled": "disabled", "deleted": "deleted",
    "skipped": "skipped", "failed": "failed",
}


def compose(notice: Notice) -> Message:
    """The subject and both parts of the e-mail about ``notice``."""
    job = _one_line(notice.job_name, 100)
    reason = _one_line(notice.reason, 100) or "Unknown"
    headline = _HEADLINES[notice.kind].format(job=job, reason=reason)
    advice = REASONS.get(reason, _UNKNOWN)
    steps: tuple[tuple[str, str], ...] = () if notice.kind == "recovered" else advice.steps
    quoted = shlex.quote(job)
    commands = [(what, command.format(job=quoted)) for what, command in steps]
    inspect = [f"{_CLI} job show {quoted}", f"{_CLI} job logs {quoted} --status failure"]
    facts = [("Job", job), ("What happened", _WHAT_HAPPENED[notice.kind]), ("Reason", reason)]
    if notice.kind != "recovered":
        facts.append(("What it means", advice.meaning))
    if notice.detail:
        facts.append(("Detail", _one_line(notice.detail, 500)))
    if notice.since:
        facts.append(("Since", notice.since))
    if notice.next_attempt:
        facts.append(("Next attempt", notice.next_attempt))
    counts = [(_COUNT_LABELS.get(key, key.replace("_", " ")), value) for key, value in notice.counts.items()]
    return Message(subject=f"[identity-sync] {headline}",
                   text=_text(headline, facts, counts, commands, inspect),
                   html=_html(headline, facts, counts, commands, inspect))


def _one_line(value: str, limit: int) -> str:
    """Control characters (a newline in a header would start a new one) become spaces."""
    text = _CONTROL.sub(" ", value).strip()
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _text(headline: str, facts: list[tuple[str, str]], counts: list[tuple[str, int]],
          commands: list[tuple[str, str]], inspect: list[str]) -> str:
    lines = [headline, ""]
    # Wrapped as plain-text mail is (78 columns); commands below never are, to stay copyable.
    lines += [textwrap.fill(f"{label}: {value}", width=76, subsequent_indent="  ", break_long_words=False,
                            break_on_hyphens=False) for label, value in facts]
    if counts:
        lines += ["", "Counts:"] + [f"  {label}: {value}" for label, value in counts]
    if commands:
        lines += ["", "What to do:"]
        for what, command in commands:
            lines += [f"  {what}", f"    {command}"]
    lines += ["", "To look into it:"] + [f"  {command}" for command in inspect]
    lines += ["", "--", "identity-sync sends this e-mail to the job's notification address, once per event."]
    return "\n".join(lines) + "\n"


_PAGE = Template("""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>$headline</title></head>
<body style="font-family: sans-serif; line-height: 1.4">
<h2 style="font-size: 1.2em">$headline</h2>
<table cellpadding="4" style="border-collapse: collapse">
$facts
</table>
$counts$commands<h3 style="font-size: 1em">To look into it</h3>
$inspect
<p style="color: #666; font-size: 0.9em">identity-sync sends this e-mail to the job's notification address, \
once per event.</p>
</body></html>
""")


def _html(headline: str, facts: list[tuple[str, str]], counts: list[tuple[str, int]],
          commands: list[tuple[str, str]], inspect: list[str]) -> str:
    e = html.escape

    def rows(pairs: list[tuple[str, str]] | list[tuple[str, int]]) -> str:
        return "\n".join(f'<tr><th align="left" valign="top">{e(label)}</th><td>{e(str(value))}</td></tr>'
                         for label, value in pairs)

    counts_html = f'<h3 style="font-size: 1em">Counts</h3>\n<table cellpadding="4">\n{rows(counts)}\n</table>\n' \
        if counts else ""
    commands_html = ""
    if commands:
        items = "\n".join(f"<li>{e(what)}<br><code>{e(command)}</code></li>" for what, command in commands)
        commands_html = f'<h3 style="font-size: 1em">What to do</h3>\n<ul>\n{items}\n</ul>\n'
    inspect_html = "\n".join(f"<p><code>{e(command)}</code></p>" for command in inspect)
    # Values are substituted once, never scanned for placeholders: a "$" in a job name stays text.
    return _PAGE.substitute(headline=e(headline), facts=rows(facts), counts=counts_html,
                                 commands=commands_html, inspect=inspect_html)
