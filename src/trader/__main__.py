from trader.cli.entry import main

main()
