-- When a packet's retention count starts. NULL: the day it was made. A clinician who keeps a packet
-- longer (a patient still under treatment) sets it to that moment, so the packet opens through the
-- retention limit counted from that day, and the hourly purge deletes it only after that.
ALTER TABLE packets ADD COLUMN kept_from TEXT;
