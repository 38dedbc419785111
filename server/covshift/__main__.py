"""`python -m covshift`: the same command line as `covshift`."""

from covshift.cli import main

raise SystemExit(main())
