"""Patch data: the one source grammar (:mod:`~hardnet_export.data.sources`), readers for
PhotoTour and HPatches, the built-in photos and the motorcycle pair, and the pair sampler.

Patches are cut and resized by :mod:`hardnet_export.geometry`; nothing here downloads.
"""
