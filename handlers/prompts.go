package handlers

import (
	"context"
	"fmt"

	"github.com/tether-dev/tether/internal/errcat"
	sshplugin "github.com/tether-dev/tether/plugins/ssh"
	"github.com/tether-dev/tether/protocol"
)

// idePrompts asks the IDE's user: window/showMessageRequest for an unknown
// host key, window/showInputRequest for passwords and passphrases.
type idePrompts struct{ c Client }

// NewPrompts returns prompts that ask through the client.
func NewPrompts(c Client) sshplugin.Prompts { return idePrompts{c} }

const trustAction = "Trust and connect"

func (p idePrompts) HostKey(ctx context.Context, host, fingerprint, keyType string) (bool, error) {
	var res *protocol.MessageActionItem
	err := p.c.Call(ctx, protocol.MethodShowMessageRequest, protocol.ShowMessageRequestParams{
		Type: protocol.MessageWarning,
		Message: fmt.Sprintf("Tether has not seen proxy machine %s before. Its %s host key fingerprint is %s. "+
			"Check it with the machine's owner; trust it and connect?", host, keyType, fingerprint),
		Actions: []protocol.MessageActionItem{{Title: trustAction}, {Title: "Cancel"}},
	}, &res)
	if err != nil {
		return false, errcat.Environment.Newf("asking the IDE about the host key: %w", err)
	}
	return res != nil && res.Title == trustAction, nil
}

func (p idePrompts) Secret(ctx context.Context, prompt string, echo bool) (string, error) {
	var res *protocol.ShowInputResult
	if err := p.c.Call(ctx, protocol.MethodShowInputRequest, protocol.ShowInputRequestParams{Message: prompt, Secret: !echo}, &res); err != nil {
		return "", errcat.Environment.Newf("asking the IDE: %w", err)
	}
	if res == nil {
		return "", errcat.User.New("cancelled by the user")
	}
	return res.Value, nil
}
