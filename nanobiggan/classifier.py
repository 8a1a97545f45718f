"""`python -m nanobiggan.classifier`: training a class-accuracy classifier, kept at its documented name.

The code is in nanobiggan/lab/classifier.py (see the README's layout: the paper here, the lab in lab/).
"""
from nanobiggan.lab.classifier import main

if __name__ == "__main__":
    main()
