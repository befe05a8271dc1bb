package metertest

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
)

// Data files, on every store (design §8).

func testRegData(t *testing.T, h *regHarness) {
	m := h.create("a", "m", "")
	require.NoError(t, m.WriteData("greeting", []byte("hello\n")))
	got, f, err := m.ReadData("greeting")
	require.NoError(t, err)
	require.Equal(t, "hello\n", string(got))
	require.Equal(t, int64(6), f.Size)
	require.NoError(t, m.WriteData("greeting", []byte("bye\n")), "replace")
	require.NoError(t, m.WriteData(".greeting.swp", nil), "an empty dot file")
	list, err := m.ListData()
	require.NoError(t, err)
	require.Equal(t, []string{".greeting.swp", "greeting"}, dataNames(list))
	require.NoError(t, m.RenameData(".greeting.swp", "greeting"), "rename over an existing file")
	got, _, err = m.ReadData("greeting")
	require.NoError(t, err)
	require.Equal(t, "", string(got), "the renamed file replaced the old one")
	require.ErrorIs(t, m.RenameData("nope", "x"), meter.ErrNotExist)
	require.NoError(t, m.DeleteData("greeting"))
	require.ErrorIs(t, m.DeleteData("greeting"), meter.ErrNotExist)
	_, _, err = m.ReadData("greeting")
	require.ErrorIs(t, err, meter.ErrNotExist)
	require.ErrorIs(t, m.WriteData("a/b", nil), meter.ErrBadData)
	require.ErrorIs(t, m.WriteData("..", nil), meter.ErrBadData)
	require.ErrorIs(t, m.WriteData("bad\xff", nil), meter.ErrBadData)
	require.NoError(t, m.WriteData(strings.Repeat("l", 255), nil), "a name of 255 bytes")
	err = m.WriteData(strings.Repeat("l", 256), nil)
	require.ErrorIs(t, err, meter.ErrDataNameTooLong, "a name of 256 bytes")
	require.NotErrorIs(t, err, meter.ErrBadData, "too long has an errno of its own")
	require.NoError(t, m.DeleteData(strings.Repeat("l", 255)))

	require.NoError(t, m.WriteData("n", []byte("20")))
	m = h.restart("a").Get("m")
	got, _, err = m.ReadData("n")
	require.NoError(t, err, "a data file after a restart")
	require.Equal(t, "20", string(got))
	require.NoError(t, h.reg("a").Remove("m"))
	m = h.create("a", "m", "")
	list, err = m.ListData()
	require.NoError(t, err)
	require.Empty(t, list, "a meter made again has no data files")
}

// testRegDataRemoved: a meter removed while its files were open (the
// *Meter still held) reaches no file any more, not even those of a meter
// made again under its name (regression: an open data/ of the removed
// meter listed, and a late close wrote into, the new meter's files).
func testRegDataRemoved(t *testing.T, h *regHarness) {
	old := h.create("a", "m", "")
	require.NoError(t, old.WriteData("f", []byte("old")))
	require.NoError(t, h.reg("a").Remove("m"))
	m := h.create("a", "m", "")
	require.NoError(t, m.WriteData("g", []byte("new")))
	_, err := old.ListData()
	require.ErrorIs(t, err, meter.ErrNotExist)
	_, _, err = old.ReadData("g")
	require.ErrorIs(t, err, meter.ErrNotExist)
	_, err = old.StatData("g")
	require.ErrorIs(t, err, meter.ErrNotExist)
	require.ErrorIs(t, old.WriteData("f", []byte("late")), meter.ErrNotExist)
	require.ErrorIs(t, old.RenameData("g", "h"), meter.ErrNotExist)
	require.ErrorIs(t, old.DeleteData("g"), meter.ErrNotExist)
	_, err = old.DataRoom("f")
	require.ErrorIs(t, err, meter.ErrNotExist)
	list, err := m.ListData()
	require.NoError(t, err)
	require.Equal(t, []string{"g"}, dataNames(list), "the removed meter reached nothing of the new one")
}

// testRegDataRoom: DataRoom is what the other files leave of 16 MiB.
func testRegDataRoom(t *testing.T, h *regHarness) {
	m := h.create("a", "m", "")
	room, err := m.DataRoom("f")
	require.NoError(t, err)
	require.Equal(t, int64(meter.MaxDataTotal), room, "an empty meter")
	require.NoError(t, m.WriteData("f", []byte("12345")))
	require.NoError(t, m.WriteData("g", []byte("123")))
	room, err = m.DataRoom("f")
	require.NoError(t, err)
	require.Equal(t, int64(meter.MaxDataTotal-3), room, "f's own bytes are not counted against it")
}

func testRegDataBounds(t *testing.T, h *regHarness) {
	m := h.create("a", "m", "")
	require.NoError(t, m.WriteData("f", []byte("old")))
	big := bytes.Repeat([]byte("x"), meter.MaxDataFile+1)
	require.ErrorIs(t, m.WriteData("f", big), meter.ErrFileTooBig)
	got, _, _ := m.ReadData("f")
	require.Equal(t, "old", string(got), "a refused write keeps the previous content")
	full := bytes.Repeat([]byte("y"), meter.MaxDataFile)
	for i := range meter.MaxDataTotal/meter.MaxDataFile - 1 {
		require.NoError(t, m.WriteData(fmt.Sprintf("big%02d", i), full), "1 MiB file %d", i)
	}
	// 15 MiB + "old": one more MiB does not fit.
	require.ErrorIs(t, m.WriteData("big15", full), meter.ErrNoSpace, "the 16th MiB beside the small file")
	_, _, err := m.ReadData("big15")
	require.ErrorIs(t, err, meter.ErrNotExist, "a refused write stores nothing")
	require.NoError(t, m.DeleteData("f"))
	require.NoError(t, m.WriteData("big15", full), "16 MiB exactly")
	for i := range meter.MaxDataTotal / meter.MaxDataFile {
		require.NoError(t, m.DeleteData(fmt.Sprintf("big%02d", i)))
	}
	for i := range meter.MaxDataFiles {
		require.NoError(t, m.WriteData(fmt.Sprintf("f%04d", i), nil), "file %d", i)
	}
	require.ErrorIs(t, m.WriteData("one-more", nil), meter.ErrNoSpace, "the 1,001st file")
	require.NoError(t, m.WriteData("f0000", []byte("x")), "replacing one of the 1,000 files")
}

func testSharedData(t *testing.T, h *regHarness) {
	h.reg("a")
	h.reg("b")
	h.create("a", "m", "")
	require.NoError(t, h.regs["a"].Get("m").WriteData("cursor", []byte("42")))
	got, _, err := h.regs["b"].Get("m").ReadData("cursor")
	require.NoError(t, err)
	require.Equal(t, "42", string(got), "b reads what a wrote")
	require.NoError(t, h.regs["b"].Get("m").RenameData("cursor", "cursor.old"))
	list, err := h.regs["a"].Get("m").ListData()
	require.NoError(t, err)
	require.Equal(t, []string{"cursor.old"}, dataNames(list), "a lists what b renamed")
}

func dataNames(fs []meter.DataFile) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.Name)
	}
	return out
}
