package oceantest

// WebhookTable creates Ocean's table "webhook" as MisskeyIO 2025.4.1-mhq.13
// (commit 431e1c1d) has it after its migrations 1648548247382-webhook.js,
// 1648816172177-webhook-2.js and 1700415938358-createdAt-default.js
// (entity: packages/backend/src/models/Webhook.ts): the columns, defaults
// and indexed columns, without the foreign key to "user" (no user table
// here).
const WebhookTable = `
CREATE TABLE "webhook" (
	"id" character varying(32) NOT NULL,
	"createdAt" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
	"userId" character varying(32) NOT NULL,
	"name" character varying(128) NOT NULL,
	"on" character varying(128) array NOT NULL DEFAULT '{}',
	"url" character varying(1024) NOT NULL,
	"secret" character varying(1024) NOT NULL,
	"active" boolean NOT NULL DEFAULT true,
	"latestSentAt" TIMESTAMP WITH TIME ZONE,
	"latestStatus" integer,
	PRIMARY KEY ("id"));
CREATE INDEX ON "webhook" ("userId");
CREATE INDEX ON "webhook" ("on");
CREATE INDEX ON "webhook" ("active");
CREATE INDEX ON "webhook" ("createdAt");
`
