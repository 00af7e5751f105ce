"""Applications of the runtime: what a user builds on a describer.

Image reading (:mod:`.images`), keypoint detection (:mod:`.detection`), matching and drawing
(:mod:`.matching`), ``.npz`` and hloc ``features.h5`` files (:mod:`.features`, :mod:`.hloc`)
and COLMAP databases (:mod:`.colmap`). They sit above :mod:`hardnet_export.runtime` and use
only its public API (``runtime.load``, :class:`~hardnet_export.runtime.base.Describer`), so
the serving core never depends on them. A new application is one module here.
"""
