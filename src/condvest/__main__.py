from condvest.cli.app import main

main()
