package watch

import "github.com/fsnotify/fsnotify"

// errOverflow is the error a backend reports when the kernel dropped events.
var errOverflow = fsnotify.ErrEventOverflow

// event is one notification about an entry of a watched directory, or about
// the directory itself.
type event struct {
	// name is the watched directory joined with the entry's name.
	name string
	// structural is set when the entry was created, removed or renamed,
	// rather than written to or its attributes changed.
	structural bool
}

// backend is the notification facility: fsnotify, or a test's wrapper of it
// that injects failures.
type backend interface {
	Add(dir string) error
	Remove(dir string) error
	WatchList() []string
	Events() <-chan event
	Errors() <-chan error
	Close() error
}

// fsnotifyBackend adapts fsnotify to backend.
type fsnotifyBackend struct {
	w      *fsnotify.Watcher
	events chan event
	done   chan struct{}
}

func newFSNotify() (backend, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	b := &fsnotifyBackend{w: fw, events: make(chan event, 64), done: make(chan struct{})}
	go b.forward()
	return b, nil
}

// forward converts fsnotify's events until its channel closes.
func (b *fsnotifyBackend) forward() {
	defer close(b.events)
	for ev := range b.w.Events {
		e := event{name: ev.Name, structural: ev.Has(fsnotify.Create) || ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)}
		select {
		case b.events <- e:
		case <-b.done:
			// Close drains fsnotify so its reader can stop.
		}
	}
}

func (b *fsnotifyBackend) Add(dir string) error    { return b.w.Add(dir) }
func (b *fsnotifyBackend) Remove(dir string) error { return b.w.Remove(dir) }
func (b *fsnotifyBackend) WatchList() []string     { return b.w.WatchList() }
func (b *fsnotifyBackend) Events() <-chan event    { return b.events }
func (b *fsnotifyBackend) Errors() <-chan error    { return b.w.Errors }

func (b *fsnotifyBackend) Close() error {
	close(b.done)
	return b.w.Close()
}
