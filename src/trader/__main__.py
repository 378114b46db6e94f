from trader.cli.main import main

main()
