-- Whom the patient calls with questions, a lost PIN or a locked packet (the ward and its phone
-- number), printed on the label and the PIN slip and shown on the patient's pages. Empty for
-- packets made before it was asked for: their pages fall back to "the number on your papers".
ALTER TABLE packets ADD COLUMN contact TEXT NOT NULL DEFAULT '';
