"""`python -m fomm_core.train`: see fomm_core.train.trainer."""
from fomm_core.train.trainer import main

raise SystemExit(main())
