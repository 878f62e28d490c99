/*
 * A line-oriented client over MariaDB Connector/C (libmariadb), for the
 * tests of what only the C API reaches (mysql_change_user). It connects
 * with argv host port user password db ("-" for none), then reads one
 * command per line on stdin and answers each with lines ended by ".":
 *   CHANGE user password db   mysql_change_user ("-" for an empty
 *                             password or no database); prints "OK"
 *   anything else             a statement; prints its rows, tab-separated
 *                             (NULL as "NULL"), or "OK n" (affected rows)
 * Errors print "ERROR code (sqlstate): message".
 */
#include <mysql.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *arg(const char *s) { return strcmp(s, "-") ? s : NULL; }

static void fail(MYSQL *m) {
	printf("ERROR %u (%s): %s\n", mysql_errno(m), mysql_sqlstate(m), mysql_error(m));
}

int main(int argc, char **argv) {
	static char line[1 << 16];
	MYSQL *m;
	if (argc != 6) {
		fprintf(stderr, "usage: %s host port user password db\n", argv[0]);
		return 2;
	}
	m = mysql_init(NULL);
	if (!mysql_real_connect(m, argv[1], argv[3], arg(argv[4]) ? argv[4] : "", arg(argv[5]),
	                        (unsigned)atoi(argv[2]), NULL, 0)) {
		fail(m);
		printf(".\n");
		return 1;
	}
	printf("connected\n.\n");
	fflush(stdout);
	while (fgets(line, sizeof line, stdin)) {
		line[strcspn(line, "\n")] = 0;
		if (strncmp(line, "CHANGE ", 7) == 0) {
			char u[256], p[256], d[256];
			if (sscanf(line + 7, "%255s %255s %255s", u, p, d) != 3) {
				printf("ERROR 0 (HY000): bad CHANGE line\n");
			} else if (mysql_change_user(m, u, arg(p) ? p : "", arg(d))) {
				fail(m);
			} else {
				printf("OK\n");
			}
		} else if (mysql_query(m, line)) {
			fail(m);
		} else {
			MYSQL_RES *r = mysql_store_result(m);
			if (r) {
				MYSQL_ROW row;
				unsigned n = mysql_num_fields(r), i;
				while ((row = mysql_fetch_row(r))) {
					for (i = 0; i < n; i++)
						printf("%s%s", i ? "\t" : "", row[i] ? row[i] : "NULL");
					printf("\n");
				}
				mysql_free_result(r);
			} else if (mysql_field_count(m) == 0) {
				printf("OK %llu\n", (unsigned long long)mysql_affected_rows(m));
			} else {
				fail(m);
			}
		}
		printf(".\n");
		fflush(stdout);
	}
	mysql_close(m);
	return 0;
}
