"""Training: the HardNet loss and the trainer."""
