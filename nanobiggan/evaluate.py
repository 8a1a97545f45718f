"""`python -m nanobiggan.evaluate`: the evaluation command line, kept at its documented name.

The code is in nanobiggan/lab/evaluate.py (see the README's layout: the paper here, the lab in lab/).
"""
from nanobiggan.lab.evaluate import main

if __name__ == "__main__":
    main()
