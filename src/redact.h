/* redact.h — secrets kept out of what the admin API shows. A URL in the configuration (a webhook,
 * a backend's metrics_url) may carry credentials, and anyone allowed to read routes or events could
 * copy them; reads show where things go, never how to get in. */
#ifndef FL_REDACT_H
#define FL_REDACT_H

#include "http.h"

#include <jansson.h>

#define FL_REDACTED "REDACTED"

/* Appends url (len bytes) to b with what may be a secret replaced: userinfo by "REDACTED@", a
 * path longer than "/" by "/…" (Slack-style hooks keep their key in the path), each query value
 * by REDACTED (names stay), a fragment by "#…". Scheme, host and port are kept:
 * "https://u:p@hooks.example/a/b?token=x&v=2" → "https://REDACTED@hooks.example/…?token=REDACTED&v=REDACTED".
 * Text without "://" is not a URL: it becomes REDACTED. Any thread; b's error sticks. */
void fl_redact_url(fl_buf_t *b, const char *url, size_t len);

/* A copy of text with every SCHEME://… in it redacted as above; a URL ends at a space, a quote,
 * an angle bracket or a backslash (so one inside JSON text ends at its closing quote). Caller
 * frees; NULL when out of memory. Any thread. */
char *fl_redact_text(const char *text);

/* In place, and returns j (NULL stays NULL): every string in the tree has its URLs redacted, and
 * the values of a "headers" object and of keys that name a credential ("authorization", "token",
 * "password", "secret", "api_key") become REDACTED. A string that cannot be rewritten becomes
 * REDACTED as a whole, never left as it was. Any thread, on a tree no other thread uses. */
json_t *fl_redact_json(json_t *j);

#endif
