from cloudsync.cli import main

main()
