/* api_driver.c - runs the API client's reads against a server, for the
 * integration tests (tests/integration/test_api_reads.py): not installed.
 *
 *   api_driver CONFIG get ORG USER_ID [once]
 *   api_driver CONFIG list ORG [Q [PER_PAGE [MAX_PAGES [retry]]]]
 *   api_driver CONFIG page ORG PAGE [Q [PER_PAGE]]
 *   api_driver CONFIG probe ORG [once]
 *
 * Prints one JSON object: the outcome, the result's fields, the members
 * read and the number of connections opened. Exit status 0 unless the
 * arguments or the configuration are wrong (2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "api.h"
#include "config.h"

static json_object *member_obj(const ps_member_t *m)
{
    json_object *j = json_object_new_object();

    json_object_object_add(j, "id", json_object_new_string(m->id));
    json_object_object_add(j, "user_id", json_object_new_string(m->user_id));
    json_object_object_add(j, "email", json_object_new_string(m->email));
    json_object_object_add(j, "name", json_object_new_string(m->name));
    json_object_object_add(j, "role", json_object_new_string(m->role));
    json_object_object_add(j, "directory_managed", json_object_new_int(m->directory_managed));
    return j;
}

static int add_member(void *arg, const ps_member_t *m)
{
    json_object_array_add(arg, member_obj(m));
    return 0;
}

int main(int argc, char **argv)
{
    ps_config_t *cfg = NULL;
    ps_client_t *c;
    ps_result_t r;
    ps_outcome_t o;
    json_object *out, *members;
    char err[1024];

    if(argc < 4) {
        fprintf(stderr, "usage: api_driver CONFIG get|list|page|probe ORG [ARGS]\n");
        return 2;
    }
    if(ps_config_load(&cfg, argv[1], 1, err, sizeof(err)) != 0) {
        fprintf(stderr, "api_driver: %s\n", err);
        return 2;
    }
    c = ps_client_new(cfg, err, sizeof(err));
    if(!c) {
        fprintf(stderr, "api_driver: %s\n", err);
        ps_config_free(cfg);
        return 2;
    }
    ps_client_set_backoff(c, 0.05, 0.5);
    out = json_object_new_object();
    members = json_object_new_array();
    if(!strcmp(argv[2], "get") && argc >= 5) {
        ps_member_t m;
        int once = argc >= 6 && !strcmp(argv[5], "once");

        o = once ? ps_client_get_member_once(c, argv[3], argv[4], 0, &m, &r)
                 : ps_client_get_member(c, argv[3], argv[4], 0, &m, &r);
        if(o == PS_OUT_OK)
            json_object_array_add(members, member_obj(&m));
    } else if(!strcmp(argv[2], "list")) {
        ps_list_opts_t lo;

        memset(&lo, 0, sizeof(lo));
        lo.q = argc >= 5 ? argv[4] : NULL;
        lo.per_page = argc >= 6 ? atoi(argv[5]) : 0;
        lo.max_pages = argc >= 7 ? atol(argv[6]) : 0;
        lo.retry = argc >= 8 && !strcmp(argv[7], "retry");
        o = ps_client_list_members(c, argv[3], &lo, add_member, members, &r);
    } else if(!strcmp(argv[2], "page") && argc >= 5) {
        ps_list_opts_t lo;
        ps_member_page_t pg;
        size_t i;

        memset(&lo, 0, sizeof(lo));
        lo.q = argc >= 6 ? argv[5] : NULL;
        lo.per_page = argc >= 7 ? atoi(argv[6]) : 0;
        o = ps_client_list_page(c, argv[3], &lo, atol(argv[4]), &pg, &r);
        for(i = 0; i < pg.n; i++)
            json_object_array_add(members, member_obj(&pg.members[i]));
        json_object_object_add(out, "next_page", json_object_new_int64(pg.next_page));
        json_object_object_add(out, "total_count", json_object_new_int64(pg.total_count));
        ps_member_page_free(&pg);
    } else if(!strcmp(argv[2], "probe")) {
        int once = argc >= 5 && !strcmp(argv[4], "once");

        o = once ? ps_client_probe_members_once(c, argv[3], 0, &r)
                 : ps_client_probe_members(c, argv[3], 0, &r);
    } else {
        fprintf(stderr, "api_driver: unknown request %s\n", argv[2]);
        json_object_put(out);
        json_object_put(members);
        ps_client_free(c);
        ps_config_free(cfg);
        return 2;
    }
    json_object_object_add(out, "outcome", json_object_new_string(ps_outcome_name(o)));
    json_object_object_add(out, "http_status", json_object_new_int64(r.http_status));
    json_object_object_add(out, "attempts", json_object_new_int(r.attempts));
    json_object_object_add(out, "pages", json_object_new_int64(r.pages));
    json_object_object_add(out, "retry_after", json_object_new_double(r.retry_after));
    json_object_object_add(out, "message", json_object_new_string(r.message));
    json_object_object_add(out, "connections", json_object_new_int64(ps_client_connects(c)));
    json_object_object_add(out, "members", members);
    puts(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
    json_object_put(out);
    ps_client_free(c);
    ps_config_free(cfg);
    return 0;
}
