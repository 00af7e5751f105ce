"""Training: the run's config (:mod:`~hardnet_export.train.config`, torch-free), the HardNet
loss, training pair sources over the data layer, and the trainer."""
