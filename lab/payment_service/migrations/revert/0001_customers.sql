-- Removes the table and every customer in it: only for reverting a database to nothing (target @base).
DROP TABLE customers;
