ALTER TABLE payments DROP COLUMN description;
