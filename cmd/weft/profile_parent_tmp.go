package main

import "github.com/spf13/cobra"

// newProfileCommand is a stand-in for the `profile` parent command, which
// the profile generation branch owns; it is replaced when the two merge.
func newProfileCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "profile", Short: "Check and explain ServiceProfiles"}
	cmd.AddCommand(newProfileValidateCommand(), newProfileExplainCommand())
	return cmd
}
