"""Where the model shipped inside the package lies (torch-free, so the runtime can find it)."""

from __future__ import annotations

from pathlib import Path

#: The shipped HardNet checkpoint, trained on the built-in photos (model card beside it).
SHIPPED_WEIGHTS = Path(__file__).parent / "weights" / "hardnet_builtin.pth"
