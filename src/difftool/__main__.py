from difftool.cli import main

main()
