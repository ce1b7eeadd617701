-- SMART Scheduling Links (issue 24): a tenant may publish its free slots as the public
-- bulk files of /fhir/R4/$bulk-publish. Off until its admin turns it on; the booking link
-- (a URL template with {slot}) and phone number go into each published Slot.
ALTER TABLE tenant
    ADD COLUMN publish_slots boolean NOT NULL DEFAULT false,
    ADD COLUMN booking_link text CHECK (length(booking_link) <= 500),
    ADD COLUMN booking_phone text CHECK (length(booking_phone) <= 40);

GRANT UPDATE (publish_slots, booking_link, booking_phone) ON tenant TO hb_app;
