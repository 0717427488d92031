-- Checkpoints sign a Merkle root over the transfers' leaf hashes (RFC 6962 tree, ledger/merkle.py)
-- so receipts carry logarithmic inclusion proofs. Checkpoints signed before this keep NULL here
-- and verify against their version-1 message.
ALTER TABLE checkpoints ADD COLUMN merkle_root TEXT;

-- The tree's right edge at the checkpoint (the roots of its perfect subtrees, hex, concatenated):
-- the next checkpoint extends it with only the newer leaves instead of rehashing the whole log.
-- Not signed: it is used only when it folds to the signed merkle_root, else rebuilt from scratch.
ALTER TABLE checkpoints ADD COLUMN merkle_frontier TEXT;
