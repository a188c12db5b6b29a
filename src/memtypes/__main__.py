from memtypes.cli import main

raise SystemExit(main())
