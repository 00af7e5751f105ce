from hardnet_export.cli import main

main()
