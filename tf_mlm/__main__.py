"""`python -m tf_mlm`, which is what `python -m tf_mlm train ...` runs."""

from tf_mlm import main

main()
