package sqlfront

import "testing"

// TestBuiltins checks each built-in against what MySQL answers: values,
// NULL arguments, wrong argument counts (1582) and unknown functions
// (1305).
func TestBuiltins(t *testing.T) {
	runScripts(t, []script{{"builtins", []step{
		{"SELECT CONCAT('a', 1, 'b') AS v", "v|a1b"},
		{"SELECT CONCAT('a', NULL) AS v", "v|NULL"},
		{"SELECT CONCAT_WS(',', 'a', NULL, 'b') AS v", "v|a,b"},
		{"SELECT CONCAT_WS(NULL, 'a') AS v", "v|NULL"},
		{"SELECT LENGTH('h\u00e9') AS a, CHAR_LENGTH('h\u00e9') AS b, OCTET_LENGTH('') AS c", "a,b,c|3,2,0"},
		{"SELECT UPPER('aB') AS a, LCASE('aB') AS b, UPPER(NULL) AS c", "a,b,c|AB,ab,NULL"},
		{"SELECT LENGTH('a', 'b')", "ERR 1582"},
		{"SELECT VERSION(1)", "ERR 1582"},
		{"SELECT IFNULL(1)", "ERR 1582"},
		{"SELECT NO_SUCH_FUNCTION(1)", "ERR 1305"},
		{"SELECT HEX(255) AS a, HEX('a') AS b, MD5('') AS c", "a,b,c|FF,61,d41d8cd98f00b204e9800998ecf8427e"},
		{"SELECT REVERSE('abc') AS a, REPEAT('ab', 3) AS b, REPEAT('ab', 0) AS c, REPEAT(NULL, 2) AS d", "a,b,c,d|cba,ababab,,NULL"},
		{"SELECT CONCAT('[', SPACE(2), ']') AS a, CONCAT('[', LTRIM('  x '), ']') AS b, CONCAT('[', RTRIM(' x  '), ']') AS c", "a,b,c|[  ],[x ],[ x]"},
		{"SELECT SUBSTRING('hello', 2, 3) AS a, SUBSTR('hello', -3) AS b, MID('hello', 9) AS c, SUBSTRING('hello', NULL) AS d", "a,b,c,d|ell,llo,,NULL"},
		{"SELECT SUBSTRING_INDEX('a.b.c', '.', 2) AS a, SUBSTRING_INDEX('a.b.c', '.', -1) AS b, REPLACE('aXbX', 'X', '-') AS c", "a,b,c|a.b,c,a-b-"},
		{"SELECT IFNULL(NULL, 2) AS a, IF(0, 1, 2) AS b, IF(NULL, 1, 2) AS c, COALESCE(NULL, NULL, 3) AS d, COALESCE(NULL) AS e", "a,b,c,d,e|2,2,2,3,NULL"},
		{"SELECT ABS(-5) AS a, ABS(NULL) AS b, FLOOR(1.5) AS c, CEILING(1.2) AS d, ROUND(2.5) AS e", "a,b,c,d,e|5,NULL,1,2,3"},
		{"SELECT DATABASE() AS a, CONNECTION_ID() AS b, USER() AS c", "a,b,c|test,7,root@127.0.0.1"},
		{"SELECT FROM_UNIXTIME(NULL) AS a, UNIX_TIMESTAMP(NULL) AS b, SLEEP(0) AS c", "a,b,c|NULL,NULL,0"},
	}}})
}
