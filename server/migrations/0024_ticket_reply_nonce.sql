-- Each drawing of a ticket's reply form carries a random nonce, stored with the reply it sent: the
-- same form sent twice (a double click, a resubmitted page) stores one reply, not two.
ALTER TABLE ticket_messages ADD COLUMN form_nonce TEXT;
CREATE UNIQUE INDEX ticket_messages_form_nonce ON ticket_messages(ticket_id, form_nonce)
    WHERE form_nonce IS NOT NULL;
