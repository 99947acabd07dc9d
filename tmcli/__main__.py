from tmcli.cli.app import main

if __name__ == "__main__":  # a spawned worker re-imports this module; it must not run the CLI
    main()
