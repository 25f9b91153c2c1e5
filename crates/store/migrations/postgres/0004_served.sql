-- Whether the node saw its service serve the version it installed (NULL: it does not check).
ALTER TABLE acknowledgements ADD COLUMN served BOOLEAN;
