-- Hashes of the Merkle tree's aligned perfect subtrees of a block (2^8 leaves) and up (merkle.py
-- ``Subtree``): node ``node_index`` at ``height`` covers leaf indices node_index·2^height up to
-- (node_index+1)·2^height. They never change once complete, so a checkpoint stores the ones it
-- completes and a receipt reads O(log n) of them plus one block of leaves instead of every
-- leaf. Not signed: a cache, used only when the proofs built from it verify against the signed
-- root; a missing row is rebuilt from the rows or leaves below it.
CREATE TABLE merkle_nodes (
    height      INTEGER NOT NULL,
    node_index  INTEGER NOT NULL,
    hash        TEXT NOT NULL,
    PRIMARY KEY (height, node_index)
) WITHOUT ROWID;
