"""Patch data: readers for PhotoTour and HPatches, the built-in photos, and the pair sampler."""
