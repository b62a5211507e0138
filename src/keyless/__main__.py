from keyless.cli.main import main

raise SystemExit(main())
