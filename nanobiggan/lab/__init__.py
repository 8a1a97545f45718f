"""The lab around the paper: everything a run needs that is not BigGAN itself.

nanobiggan/ holds the paper (the networks, the losses and regularisers, the training step, sampling); this
subpackage holds the bench it stands on: files and checkpoints, datasets, the run log and plots, the
Inception network and the evaluation protocol, the class-accuracy classifier, the released weights, and the
command lines' shared parts. Nothing in nanobiggan/ outside lab/ imports from here except the command lines.
"""
