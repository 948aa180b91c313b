-- An email newsletter service: audiences of subscribers with consent status and tags; campaigns
-- go draft -> scheduled -> sent (or cancelled) and are delivered only to subscribed recipients.
CREATE TABLE audiences (
  audience_id   INTEGER PRIMARY KEY,
  name          TEXT NOT NULL UNIQUE,
  from_address  TEXT NOT NULL
);
CREATE TABLE subscribers (
  subscriber_id   INTEGER PRIMARY KEY,
  audience_id     INTEGER NOT NULL REFERENCES audiences(audience_id),
  email           TEXT NOT NULL,
  name            TEXT NOT NULL,
  status          TEXT NOT NULL CHECK (status IN ('subscribed', 'unsubscribed', 'bounced')),
  consent_source  TEXT NOT NULL,
  joined_on       TEXT NOT NULL,
  UNIQUE (audience_id, email)
);
CREATE TABLE subscriber_tags (
  subscriber_id  INTEGER NOT NULL REFERENCES subscribers(subscriber_id),
  tag            TEXT NOT NULL,
  PRIMARY KEY (subscriber_id, tag)
);
CREATE TABLE campaigns (
  campaign_id    INTEGER PRIMARY KEY,
  audience_id    INTEGER NOT NULL REFERENCES audiences(audience_id),
  subject        TEXT NOT NULL,
  body           TEXT NOT NULL,
  segment_tag    TEXT,
  status         TEXT NOT NULL CHECK (status IN ('draft', 'scheduled', 'sent', 'cancelled')),
  scheduled_for  TEXT,
  sent_on        TEXT
);
CREATE TABLE deliveries (
  delivery_id    INTEGER PRIMARY KEY,
  campaign_id    INTEGER NOT NULL REFERENCES campaigns(campaign_id),
  subscriber_id  INTEGER NOT NULL REFERENCES subscribers(subscriber_id),
  outcome        TEXT NOT NULL CHECK (outcome IN ('delivered', 'bounced', 'opened')),
  UNIQUE (campaign_id, subscriber_id)
);
