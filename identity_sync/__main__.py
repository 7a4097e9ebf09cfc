from identity_sync.cli import main

main()
