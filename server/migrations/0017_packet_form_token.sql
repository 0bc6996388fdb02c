-- The random token of the form a packet was made from: the same form sent again (a reload of the
-- result page, a double click) makes no second packet for the same patient.
ALTER TABLE packets ADD COLUMN form_token TEXT;
CREATE UNIQUE INDEX packets_form_token ON packets(form_token) WHERE form_token IS NOT NULL;
