from hpcsched.cli.main import main

main()
