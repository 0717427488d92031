"""Receipt building: every leaf hashed (before ``merkle_nodes``) against stored subtrees."""
