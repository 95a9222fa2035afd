from probe.ui.cli import main

raise SystemExit(main())
