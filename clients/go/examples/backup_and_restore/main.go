// Command backup_and_restore creates a backup, detaches from it and
// re-attaches with WatchBackup, then restores it with a suffix and follows the
// restore with WatchRestore, through the milvus-backup gRPC API.
//
//	backup_and_restore -server 127.0.0.1:8080 -collection hello_milvus -suffix _go
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/milvus-backup-rs/clients/go/backupv1"
	"google.golang.org/grpc"
)

func main() {
	server := flag.String("server", "127.0.0.1:8080", "milvus-backup server")
	collection := flag.String("collection", "hello_milvus", "collection to back up")
	name := flag.String("name", fmt.Sprintf("go_backup_%d", time.Now().Unix()), "backup name")
	suffix := flag.String("suffix", "_go", "suffix of the restored collection")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	conn, err := grpc.DialContext(ctx, *server, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		fail("connect: %v", err)
	}
	defer conn.Close()
	client := backupv1.NewBackupServiceClient(conn)

	// Start the backup, read its first snapshot, then leave: the job goes on
	// in the server without us.
	createCtx, leave := context.WithCancel(ctx)
	stream, err := client.CreateBackup(createCtx, &backupv1.CreateBackupRequest{BackupName: *name, CollectionNames: []string{*collection}})
	if err != nil {
		fail("CreateBackup: %v", err)
	}
	started, err := stream.Recv()
	if err != nil {
		fail("CreateBackup stream: %v", err)
	}
	fmt.Printf("backup %s started (%s), detaching\n", started.Backup.GetName(), started.Backup.GetState())
	leave()

	// Re-attach by name with WatchBackup: the current snapshot first, then
	// each change until the end.
	watchBackup, err := client.WatchBackup(ctx, &backupv1.WatchBackupRequest{Name: *name})
	if err != nil {
		fail("WatchBackup: %v", err)
	}
	var backup *backupv1.Backup
	for {
		msg, err := watchBackup.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			fail("WatchBackup stream: %v", err)
		}
		backup = msg.Backup
		fmt.Printf("backup %s %d%% (re-attached)\n", backup.State, backup.Progress.GetPercent())
	}
	if backup.GetState() != backupv1.JobState_JOB_STATE_SUCCEEDED {
		fail("backup failed: %s", backup.GetErrorMessage())
	}

	restore, err := client.Restore(ctx, &backupv1.RestoreRequest{BackupName: *name, CollectionSuffix: *suffix, DropExistingCollections: true})
	if err != nil {
		fail("Restore: %v", err)
	}
	first, err := restore.Recv()
	if err != nil {
		fail("Restore stream: %v", err)
	}
	watch, err := client.WatchRestore(ctx, &backupv1.WatchRestoreRequest{Id: first.Restore.Id})
	if err != nil {
		fail("WatchRestore: %v", err)
	}
	var job *backupv1.RestoreJob
	for {
		msg, err := watch.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			fail("WatchRestore stream: %v", err)
		}
		job = msg.Restore
		fmt.Printf("restore %s %d%%\n", job.State, job.Progress.GetPercent())
	}
	if job.GetState() != backupv1.JobState_JOB_STATE_SUCCEEDED {
		fail("restore failed: %s", job.GetErrorMessage())
	}
	for _, c := range job.Collections {
		fmt.Printf("restored %s -> %s: %d rows\n", c.SourceCollectionName, c.TargetCollectionName, c.ImportedRows)
	}
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
