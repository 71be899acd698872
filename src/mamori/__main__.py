from mamori.cli.entry import main

main()
