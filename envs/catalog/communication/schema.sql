-- An email newsletter service. Audiences hold subscribers with a consent status and tags; saved
-- segments select subscribers by tag (and join date); campaigns go draft -> scheduled -> sent and
-- are delivered only to subscribed people in their segment; hard bounces clean an address.
CREATE TABLE audiences (
  audience_id  INTEGER PRIMARY KEY,
  name         TEXT NOT NULL UNIQUE,
  from_name    TEXT NOT NULL,
  from_email   TEXT NOT NULL CHECK (from_email LIKE '%_@_%._%'),
  created_on   TEXT NOT NULL
);

CREATE TABLE subscribers (
  subscriber_id       INTEGER PRIMARY KEY,
  audience_id         INTEGER NOT NULL REFERENCES audiences(audience_id),
  email               TEXT NOT NULL CHECK (email = lower(email) AND email LIKE '%_@_%._%'),
  full_name           TEXT NOT NULL,
  status              TEXT NOT NULL CHECK (status IN ('subscribed', 'unsubscribed', 'cleaned')),
  consent_source      TEXT NOT NULL CHECK (consent_source IN ('signup_form', 'event', 'import', 'api')),
  joined_on           TEXT NOT NULL,
  unsubscribed_on     TEXT,
  unsubscribe_reason  TEXT CHECK (unsubscribe_reason IS NULL OR unsubscribe_reason IN
                        ('no_longer_interested', 'too_frequent', 'not_relevant', 'never_signed_up', 'other')),
  UNIQUE (audience_id, email),
  CHECK ((status = 'unsubscribed') = (unsubscribed_on IS NOT NULL)),
  CHECK (unsubscribed_on IS NULL OR unsubscribed_on >= joined_on)
);

CREATE TABLE subscriber_tags (
  subscriber_id  INTEGER NOT NULL REFERENCES subscribers(subscriber_id),
  tag            TEXT NOT NULL CHECK (tag = lower(tag) AND length(tag) BETWEEN 2 AND 30),
  PRIMARY KEY (subscriber_id, tag)
);

CREATE TABLE segments (
  segment_id    INTEGER PRIMARY KEY,
  audience_id   INTEGER NOT NULL REFERENCES audiences(audience_id),
  segment_name  TEXT NOT NULL,
  tag           TEXT NOT NULL CHECK (tag = lower(tag)),
  joined_after  TEXT,
  created_on    TEXT NOT NULL,
  UNIQUE (audience_id, segment_name)
);

CREATE TABLE campaigns (
  campaign_id      INTEGER PRIMARY KEY,
  audience_id      INTEGER NOT NULL REFERENCES audiences(audience_id),
  segment_id       INTEGER REFERENCES segments(segment_id),
  subject          TEXT NOT NULL CHECK (length(subject) BETWEEN 1 AND 150),
  preview_text     TEXT NOT NULL DEFAULT '',
  body             TEXT NOT NULL,
  status           TEXT NOT NULL CHECK (status IN ('draft', 'scheduled', 'sent')),
  created_on       TEXT NOT NULL,
  scheduled_for    TEXT,
  sent_at          TEXT,
  recipient_count  INTEGER CHECK (recipient_count IS NULL OR recipient_count > 0),
  CHECK ((status = 'scheduled') = (scheduled_for IS NOT NULL)),
  CHECK ((status = 'sent') = (sent_at IS NOT NULL AND recipient_count IS NOT NULL)),
  -- nothing leaves without a way to unsubscribe
  CHECK (status = 'draft' OR instr(body, '{{unsubscribe_link}}') > 0)
);

CREATE TABLE deliveries (
  delivery_id    INTEGER PRIMARY KEY,
  campaign_id    INTEGER NOT NULL REFERENCES campaigns(campaign_id),
  subscriber_id  INTEGER NOT NULL REFERENCES subscribers(subscriber_id),
  outcome        TEXT NOT NULL CHECK (outcome IN ('delivered', 'opened', 'clicked', 'bounced')),
  bounce_type    TEXT CHECK (bounce_type IS NULL OR bounce_type IN ('hard', 'soft')),
  UNIQUE (campaign_id, subscriber_id),
  CHECK ((outcome = 'bounced') = (bounce_type IS NOT NULL))
);

CREATE INDEX subscribers_audience ON subscribers(audience_id, status);
CREATE INDEX subscriber_tags_tag ON subscriber_tags(tag);
CREATE INDEX segments_audience ON segments(audience_id);
CREATE INDEX campaigns_audience ON campaigns(audience_id, status);
CREATE INDEX deliveries_subscriber ON deliveries(subscriber_id);
