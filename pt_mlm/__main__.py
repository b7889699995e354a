"""`python -m pt_mlm`, which is what `accelerate launch -m pt_mlm train ...` runs."""

from pt_mlm import main

main()
