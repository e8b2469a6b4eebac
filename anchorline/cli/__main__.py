from anchorline.cli.main import main

raise SystemExit(main())
