// The job page's import form: a chosen file is read into the text area, so that the form posts
// the document as text (the console reads no multipart bodies).
"use strict";
(function () {
  const file = document.getElementById("import-file");
  const text = document.getElementById("import-text");
  if (!file || !text) return;
  file.addEventListener("change", async () => {
    if (file.files.length) text.value = await file.files[0].text();
  });
})();
