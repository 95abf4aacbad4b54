"""Small utilities every stage uses: atomic file writes (:mod:`.atomic_file`) and the
torch device choice (:mod:`.devices`)."""
