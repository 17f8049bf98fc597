"""Honest evaluation of the classifier and the scorer on patients they were not tuned on.

Everything here works on predictions and truths (plain arrays), never on models:

- every metric is computed with per-scan weights, so that a bootstrap replicate is just a
  weight vector (how often each scan's subject was drawn) and thousands of replicates are
  one vectorised computation;
- confidence intervals are percentile bootstrap intervals that resample *subjects* with
  replacement (all scans of a drawn subject come along), so scans of one person never count
  as independent evidence;
- a figure from too few subjects, or from a test set missing a class, is reported as
  "not interpretable (n=...)" instead of as a number;
- every model metric has its baselines beside it: the classifier against the training
  prevalence, the scorer against the training mean and against the infection U-Net's
  segmentation read-out (percent of lung infected), with the paired bootstrap interval of the
  difference, so a model that does not beat them is visibly so.

Modules: ``metrics`` (plain metrics of the training step), ``bootstrap`` (weighted metrics and
intervals by subject), ``reports`` (the evaluate step's read-outs).
"""
