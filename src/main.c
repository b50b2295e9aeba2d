/* main.c — the `fledge` command: dispatches to serve, check, mock, load, the admin tools and version. */
#include "cli.h"
#include "common.h"
#include "conf.h"
#include "explain.h"
#include "load.h"
#include "mock.h"
#include "resolver.h"
#include "server.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *out) {
  fprintf(out,
          "usage: fledge COMMAND [options]\n"
          "\n"
          "fledge is a gateway in front of AI model servers that releases new model versions\n"
          "gradually: it splits traffic between a stable and a canary version.\n"
          "\n"
          "commands:\n"
          "  serve -c FILE   run the gateway in the foreground (SIGHUP reloads, SIGTERM drains)\n"
          "  check -c FILE   validate a config file; errors are printed as FILE:LINE:COL: message\n"
          "  mock [options]  run a fake OpenAI-compatible model server (see fledge mock --help)\n"
          "  stats           per-variant rates, errors, latency and tokens of a running gateway\n"
          "  status          routes, canary weights and rollouts of a running gateway\n"
          "  top             a live view of a running gateway: rollouts, per-variant rates and latency\n"
          "  rollout ACTION ROUTE   start|pause|resume|promote|abort|undo a progressive rollout\n"
          "  rollout weight ROUTE N set a canary weight by hand (recorded in the event log)\n"
          "  explain -c FILE  which route, rule or bucket would send a request where, and why\n"
          "  history         the event log: who changed which weight, when and why\n"
          "  load            send paced chat completions from many sticky users to a gateway\n"
          "  version         print the version\n"
          "\n"
          "Run 'fledge COMMAND --help' for a command's options.\n");
}

/* Parses "-c FILE" / "--config FILE" for serve and check; returns the path or NULL. */
static const char *config_arg(int argc, char **argv, const char *cmd, const char *what) {
  static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *path = NULL;
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
    if (ch == 'c') {
      path = optarg;
    } else if (ch == 'h') {
      printf("usage: fledge %s -c FILE\n\n%s\n\n  -c, --config FILE   the YAML config (see docs/config.md)\n", cmd, what);
      return "";
    } else {
      return NULL;
    }
  }
  if (!path || optind < argc) {
    fprintf(stderr, "usage: fledge %s -c FILE\n", cmd);
    return NULL;
  }
  return path;
}

static int cmd_check(int argc, char **argv) {
  const char *path = config_arg(argc, argv, "check", "Validates a config file and exits 0 when it is good, 1 when not.");
  if (!path) return 2;
  if (!*path) return 0;
  char err[512];
  fl_conf_t *c;
  if (fl_conf_load(path, &c, err, sizeof err) != 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  if (c->admin_token_error) {
    fprintf(stderr, "%s\n", c->admin_token_error);
    fl_conf_unref(c);
    return 1;
  }
  if (c->warnings) fputs(c->warnings, stderr);
  int rc = fl_resolver_apply(c, err, sizeof err);     /* a host name that serve would refuse */
  fl_resolver_shutdown();
  if (rc != 0) {
    fprintf(stderr, "%s\n", err);
    fl_conf_unref(c);
    return 1;
  }
  printf("%s: ok (%zu routes, %u workers)\n", path, c->n_routes, c->workers);
  fl_conf_unref(c);
  return 0;
}

static int cmd_serve(int argc, char **argv) {
  const char *path = config_arg(argc, argv, "serve",
                                "Runs the gateway in the foreground. SIGHUP reloads the config (the old one keeps\n"
                                "serving if the new one is invalid); SIGTERM or SIGINT stop accepting, let requests\n"
                                "in flight finish (timeouts.drain) and exit.");
  if (!path) return 2;
  if (!*path) return 0;
  return fl_server_run(path);
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "serve") == 0) return cmd_serve(argc - 1, argv + 1);
  if (strcmp(cmd, "check") == 0) return cmd_check(argc - 1, argv + 1);
  if (strcmp(cmd, "mock") == 0) return fl_mock_main(argc - 1, argv + 1);
  if (strcmp(cmd, "stats") == 0) return fl_cli_stats(argc - 1, argv + 1);
  if (strcmp(cmd, "status") == 0) return fl_cli_status(argc - 1, argv + 1);
  if (strcmp(cmd, "rollout") == 0) return fl_cli_rollout(argc - 1, argv + 1);
  if (strcmp(cmd, "history") == 0) return fl_cli_history(argc - 1, argv + 1);
  if (strcmp(cmd, "load") == 0) return fl_load_main(argc - 1, argv + 1);
  if (strcmp(cmd, "top") == 0) return fl_cli_top(argc - 1, argv + 1);
  if (strcmp(cmd, "explain") == 0) return fl_explain_main(argc - 1, argv + 1);
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
    printf("fledge %s\n", FL_VERSION);
    return 0;
  }
  fprintf(stderr, "fledge: unknown command '%s'\n\n", cmd);
  usage(stderr);
  return 2;
}
