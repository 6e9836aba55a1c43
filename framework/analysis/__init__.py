"""Analysis tools over trained video models (reference/analysis.md):

- static vs dynamic bias (Kowal et al.): pairs.py (clip pairs), features.py (pooled stage features),
  estimator.py (the scores and unit labels), bias.py (reports), cli.py (`vt-probe bias`);
- StaticDropout (an engineering design: the published details are not known): static_dropout.py;
- spatiotemporal fusion by Variational DropPath (Zhou et al.): the template is the backbone family
  `fusion3d` (framework/models/backbones/fusion3d.py); fusion.py samples and scores its sub-networks,
  computes the marginals and exports the best one;
- hooks.py: what a training run calls (analysis.* config, config.py).
"""
