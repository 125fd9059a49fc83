from heshi.cli.main import main

main()
