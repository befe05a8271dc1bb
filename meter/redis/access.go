package redis

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/redis/rueidis"
)

// accessError explains a refusal by the store's access control (a wrong or
// missing password, protected mode, an ACL user without a command rlfs
// needs) with Redis's own text and the fix, or returns nil when err is no
// such refusal. op says what rlfs was doing ("connect to", "load the rlfs
// functions into", …) and where (the store's URL without its password, or
// a node's address); opt.URL and opt.Password say where the password came
// from.
func accessError(op, where string, opt Options, err error) error {
	text := ""
	if re, ok := rueidis.IsRedisErr(err); ok {
		text = re.Error()
	} else if text = greeting(opt.URL, err); text == "" {
		return nil
	} else {
		err = errors.New(text)
	}
	code, _, _ := strings.Cut(text, " ")
	user, urlPass := urlUser(opt.URL)
	switch code {
	case "WRONGPASS":
		return fmt.Errorf("redis: %s %s: authentication failed, the store refused %s (%w); check %s",
			op, where, credentials(user), err, passwordSource(urlPass, opt.Password != ""))
	case "NOAUTH":
		return fmt.Errorf("redis: %s %s: the store needs a password and none was given (%w); put it in the URL (redis://:PASSWORD@HOST:PORT, or redis://USER:PASSWORD@… for an ACL user) or in RLFS_STORE_PASSWORD",
			op, where, err)
	case "DENIED":
		return fmt.Errorf("redis: %s %s: the store refuses this host (%w); give Redis a password (requirepass, or an ACL user for rlfs: docs/fleet.md) and pass it in the URL or in RLFS_STORE_PASSWORD",
			op, where, err)
	case "NOPERM":
		return fmt.Errorf("redis: %s %s: %s may not run a command rlfs needs (%w); allow it with ACL SETUSER (the rule in docs/fleet.md, \"An ACL user for rlfs\", lists every command, key and channel rlfs uses) or use another user",
			op, where, aclUser(user), err)
	}
	return nil
}

// urlUser returns the user name of a store URL ("" for the default user)
// and whether it carries a password.
func urlUser(raw string) (user string, pass bool) {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return "", false
	}
	_, pass = u.User.Password()
	return u.User.Username(), pass
}

func credentials(user string) string {
	if user == "" {
		return "the password of the default user"
	}
	return fmt.Sprintf("user %q or its password", user)
}

func aclUser(user string) string {
	if user == "" {
		return "the default user"
	}
	return fmt.Sprintf("the ACL user %q", user)
}

// passwordSource names where the password rlfs sent came from.
func passwordSource(inURL, fromEnv bool) string {
	switch {
	case inURL:
		return "the password in the store URL (redis://USER:PASSWORD@HOST:PORT; RLFS_STORE_PASSWORD is used only when the URL has none)"
	case fromEnv:
		return "RLFS_STORE_PASSWORD (the password sent, as the URL has none) and the user name in the URL"
	}
	return "the password in the store URL or in RLFS_STORE_PASSWORD"
}

// greeting returns the error a server sent on its own as a connection
// opened, when connecting failed with the connection closed (err EOF or a
// reset): a Redis in protected mode writes "-DENIED …" and closes before
// it reads anything, so the client never reads it as an answer. Only for
// redis:// (with TLS the refusal comes after the handshake); "" if there
// is none.
func greeting(raw string, err error) string {
	if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		return ""
	}
	u, perr := url.Parse(raw)
	if perr != nil || u.Scheme != "redis" || u.Host == "" {
		return ""
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "6379")
	}
	c, derr := net.DialTimeout("tcp", addr, time.Second)
	if derr != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	line, _ := bufio.NewReaderSize(c, 4096).ReadString('\n')
	if !strings.HasPrefix(line, "-") {
		return ""
	}
	return strings.TrimRight(line[1:], "\r\n")
}
